"""The "Model anatomy" expander of the Train page: blocks, trainable vs frozen parameters per phase, input."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import StudioError
from core.models.backbones import get_backbone
from core.models.plan import RunPlan

SHOWN = "anatomy_shown"
PHASES = {"frozen": "Phase 1: frozen base, new head", "top": "Fine-tuning: top layers unfrozen",
          "all": "From scratch: everything trains"}


@st.cache_data(show_spinner=False, max_entries=16)
def anatomy(backbone: str, image_size: int, fine_tune_layers: int | None, num_classes: int,
            hidden_units: int) -> dict:
    """``{mode: describe_model(...)}`` for a random-init build (the counts do not depend on the weights);
    ``fine_tune_layers`` None unfreezes the whole base, as training does."""
    from core.models.anatomy import describe_model
    from core.models.classifier import build_classifier, set_backbone_trainable
    from core.models.weights import NO_WEIGHTS

    model = build_classifier(get_backbone(backbone), image_size=image_size, num_classes=num_classes,
                             weights=NO_WEIGHTS, hidden_units=hidden_units)
    described = {}
    layers = fine_tune_layers or len(model.get_layer("backbone").layers)
    for mode in PHASES:
        set_backbone_trainable(model, mode, layers if mode == "top" else 0)
        described[mode] = describe_model(model)
    return described


def phases_frame(described: dict) -> pd.DataFrame:
    """One row per phase: trainable and frozen parameters (Keras' own counts) and the trainable share."""
    rows = []
    for mode, title in PHASES.items():
        totals = described[mode]["totals"]
        rows.append({"phase": title, "trainable parameters": totals["trainable_params"],
                     "frozen parameters": totals["frozen_params"],
                     "trainable share": totals["trainable_params"] / max(totals["params"], 1)})
    return pd.DataFrame(rows)


def blocks_frame(described: dict) -> pd.DataFrame:
    """One row per backbone block: layers, parameters, and what trains in phase 1 and in fine-tuning."""
    tuned = {block["name"]: block for block in described["top"]["blocks"]}
    return pd.DataFrame([{"block": block["name"], "layers": block["layers"], "parameters": block["params"],
                          "trainable in phase 1": block["trainable_params"],
                          "trainable when fine-tuning": tuned[block["name"]]["trainable_params"]}
                         for block in described["frozen"]["blocks"]])


def render_anatomy(plan: RunPlan, num_classes: int) -> None:
    """The expander for a run's ``core.models.plan.RunPlan``; the model is built on the first click and cached per
    backbone, size and layers."""
    spec, size, config = plan.spec, plan.image_size, plan.config
    layers = config.fine_tune_layers  # what fine-tuning unfreezes: None, the whole base (BatchNorm frozen)
    with st.expander("Model anatomy"):
        st.caption("What the network looks like inside, and which parts learn in each phase of training.")
        if st.button("Show the model anatomy", key="anatomy_button"):
            st.session_state[SHOWN] = True
        if not st.session_state.get(SHOWN):
            return
        try:
            with st.spinner(f"Building {spec.display_name} to count its parameters…"):
                described = anatomy(spec.name, size, layers, num_classes, config.hidden_units)
        except StudioError as exc:
            st.error(str(exc))
            return
        first, tuned = described["frozen"], described["top"]
        st.write(f"**Input**: colour images of {size} x {size} pixels. **Preprocessing**: "
                 f"{first['preprocessing_words']}")
        st.write(f"**{spec.display_name}** has {len(first['blocks'])} blocks and "
                 f"{first['backbone_block']['params']:,} parameters learned on ImageNet. The new **head** "
                 f"(pooling, dropout, {num_classes}-class output) has {first['head_block']['params']:,} parameters.")
        st.write(f"In **phase 1** only the head learns ({first['totals']['trainable_params']:,} parameters); the base "
                 f"is a frozen feature extractor. **Fine-tuning** also unfreezes "
                 f"{f'the top {layers} layers of the base' if layers else 'the whole base'} "
                 f"({tuned['totals']['trainable_params']:,} trainable parameters), except BatchNormalization "
                 f"layers, which stay frozen so small batches do not disturb what the base learned.")
        st.dataframe(phases_frame(described), hide_index=True, width="stretch", column_config={
            "trainable share": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        st.caption("Frozen parameters left when training from scratch are BatchNormalization running averages: "
                   "they are updated by averaging, not learned by gradient descent (Keras counts them as such).")
        st.dataframe(blocks_frame(described), hide_index=True, width="stretch")
