"""Evaluate: how good a run is on its validation (or test) images, where it fails and why."""

import streamlit as st

from core.delivery.report import run_report
from core.errors import StudioError
from ui import evaluate_views as views
from ui.dataset_match_views import choose_dataset
from ui.state import get_run_id, get_workspace, set_run_id
from ui.text import escape_markdown

st.title("Evaluate")
workspace = get_workspace()

finished = views.finished_runs(workspace)
if not finished:
    st.info("No trained model yet. Train one on the Train page, then come back here.")
    st.stop()

run_ids = [record["run_id"] for record in finished]
current = get_run_id()
left, right = st.columns([3, 1])
run_id = left.selectbox("Run", run_ids, index=run_ids.index(current) if current in run_ids else 0, key="eval_run",
                        on_change=lambda: set_run_id(st.session_state["eval_run"]))
if run_id != current:
    set_run_id(run_id)
record = next(r for r in finished if r["run_id"] == run_id)

choice = choose_dataset(workspace, record, left)
dataset = choice.dataset
splits = choice.splits()
if not splits:
    st.error(f"Dataset {dataset.id} has no validation or test images to evaluate on.")
    st.stop()
own = dataset.id == record["config"]["dataset_id"]
honesty = record if own else {}  # a run's split roles say nothing about another dataset's images
split_key = f"eval_split_{dataset.id}"
headline_split = (honesty.get("headline") or {}).get("split")
if headline_split in splits and st.session_state.get("eval_split_run") != (run_id, dataset.id):
    st.session_state[split_key], st.session_state["eval_split_run"] = headline_split, (run_id, dataset.id)
split = right.selectbox("Images", splits, format_func=lambda name: views.split_label(name, honesty), key=split_key)

try:
    result = views.evaluation(workspace, run_id, split, None if choice.mapping is None else dataset.id,
                              choice.mapping)
except StudioError as exc:
    st.error(escape_markdown(str(exc)))
    st.stop()

cols = st.columns(4)
low, high = result.accuracy_interval
cols[0].metric("Accuracy", f"{result.accuracy:.1%}", help=f"95% interval {low:.1%} to {high:.1%} "
               f"({result.num_images} images)")
st.caption(views.split_caption(split, honesty, low, high))
cols[1].metric("Macro F1", f"{result.macro_f1:.3f}")
cols[2].metric("Images", result.num_images)
cols[3].metric("Mistakes", sum(not r["correct"] for r in result.records))
reuse = result if own and choice.mapping is None and split == headline_split else None
st.download_button("Download report (HTML)", lambda: run_report(workspace, run_id, evaluation=reuse).encode(),
                   file_name=f"{run_id}-report.html", mime="text/html", on_click="ignore", key="eval_report",
                   help="The model card as one web page for people who do not open the app: curves, confusion "
                        "matrix, per-class table, data and the honest headline with its split.")

st.subheader("Per class")
table_side, bars_side = st.columns(2)
table_side.dataframe(views.per_class_table(result), hide_index=True, width="stretch")
bars_side.plotly_chart(views.per_class_figure(result), key="eval_per_class_bars")

normalized = st.toggle("Confusion matrix as shares of each true class", key="eval_normalized",
                       help="Each row divided by its class's images: the diagonal is each class's recall, and "
                            "a small class counts as much as a large one.")
left, right = st.columns(2)
with left:
    event = st.plotly_chart(views.confusion_figure(result, normalized=normalized), on_select="rerun",
                            selection_mode="points", key=f"eval_confusion_{run_id}_{dataset.id}_{split}")
with right:
    st.plotly_chart(views.threshold_figure(result))
    st.caption("Answers below the threshold would be reported as \"unknown\": coverage is the share still "
               "answered, accuracy is measured on those.")

gradcam = st.toggle("Show Grad-CAM (where the model looks)", key="eval_gradcam",
                    disabled=not views.gradcam_available(),
                    help="Highlights the image regions that drove the predicted class.")

st.subheader("Images behind a cell")
classes = list(result.classes)
true_key, predicted_key = f"eval_true_{run_id}", f"eval_predicted_{run_id}"
clicked = views.selected_cell(event, classes)
if clicked and st.session_state.get("eval_last_click") != clicked:
    st.session_state["eval_last_click"] = clicked  # a new click moves the selectboxes to that cell
    st.session_state[true_key], st.session_state[predicted_key] = clicked
pick_true, pick_predicted, _ = st.columns([1, 1, 2])
true_label = pick_true.selectbox("True class", classes, key=true_key)
predicted_label = pick_predicted.selectbox("Predicted class", classes, key=predicted_key)
views.show_gallery(workspace, run_id, result.records_in_cell(true_label, predicted_label), gradcam=gradcam,
                   limit=12, empty=f"No {views.SPLIT_NAMES[split]} image of {escape_markdown(true_label)} was predicted "
                                   f"as {escape_markdown(predicted_label)}.",
                   key=f"eval_cell_page_{run_id}_{split}_{true_label}_{predicted_label}")

st.subheader("Mistakes, most confident first")
views.show_gallery(workspace, run_id, result.mistakes(), gradcam=gradcam, limit=12,
                   empty="No mistakes on these images.", key=f"eval_mistakes_page_{run_id}_{split}")
