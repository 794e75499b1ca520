"""The backbone registry: every pretrained base the studio offers, as data.

Each entry says which ``keras.applications`` constructor builds it, which input sizes make sense, how big and how
accurate it is (figures from the Keras applications table), how its pixels must be preprocessed, which weight file
Keras caches for it, and where a sensible fine-tuning boundary lies. ``core.models.classifier`` turns an entry into a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import ConfigError

# Input sizes for which Keras publishes a separate MobileNetV2 weight file; other sizes load the 224 file.
MOBILENET_V2_WEIGHT_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained base.

    Attributes:
        name: Registry key, e.g. ``mobilenet_v2``.
        display_name: Name shown to people.
        constructor: Attribute of ``keras.applications`` that builds it.
        default_size: Input size (pixels, square) the ImageNet weights were trained at.
        allowed_sizes: Input sizes offered in the app.
        params: Parameter count of the base without its top, as Keras builds it (checked by a test).
        size_mb: Size of the weight file in MB, from the Keras applications table (see ``size_note``).
        top1: ImageNet top-1 accuracy from the Keras applications table (see ``top1_note``).
        preprocessing: ``tf`` (scale to [-1, 1]), ``caffe`` (BGR, minus ImageNet means), ``torch`` (ImageNet
            mean and standard deviation) or ``builtin`` (the Keras model carries its own).
        guidance: When to pick it, in plain words.
        weights_pattern: File name Keras caches for ``include_top=False``; ``{size}`` is filled for MobileNetV2.
        keras_module: Module of ``keras.applications`` holding its ``preprocess_input``.
        min_size: Smallest input Keras accepts.
        fine_tune_from: Name of the first backbone layer of the default fine-tuning block (or empty).
        fine_tune_after: Name of the last frozen layer before that block, when the block's own layers have
            automatic (unstable) names, as in InceptionV3.
        fine_tune_layers: Layer count from that boundary to the end (checked against the built model by a test).
        constructor_kwargs: Extra keyword arguments for the constructor.
        size_note / top1_note: Where ``size_mb`` / ``top1`` come from when the Keras table lacks the model.
    """

    name: str
    display_name: str
    constructor: str
    default_size: int
    allowed_sizes: tuple[int, ...]
    params: int
    size_mb: float
    top1: float
    preprocessing: str
    guidance: str
    weights_pattern: str = ""
    keras_module: str = ""
    min_size: int = 32
    fine_tune_from: str = ""
    fine_tune_after: str = ""
    fine_tune_layers: int = 0
    constructor_kwargs: dict = field(default_factory=dict)
    size_note: str = "Keras applications table"
    top1_note: str = "Keras applications table"

    def weights_file(self, image_size: int) -> str:
        """The file name Keras caches in ``$KERAS_HOME/models`` for this base at ``image_size``.

        Only MobileNetV2 has one file per input size (96, 128, 160, 192, 224); at any other size Keras warns
        and loads the 224 file, so that is the file named here.
        """
        if "{size}" not in self.weights_pattern:
            return self.weights_pattern
        size = image_size if image_size in MOBILENET_V2_WEIGHT_SIZES else 224
        return self.weights_pattern.format(size=size)

    def default_fine_tune_layers(self) -> int:
        """How many top backbone layers fine-tuning unfreezes by default: the last block(s) up to the output."""
        return self.fine_tune_layers


def _spec(**values) -> BackboneSpec:
    return BackboneSpec(**values)


_SPECS = (
    _spec(name="mobilenet_v2", display_name="MobileNetV2", constructor="MobileNetV2", default_size=224,
          allowed_sizes=(96, 128, 160, 192, 224), params=2_257_984, size_mb=14, top1=0.713, preprocessing="tf",
          guidance="Fastest all-rounder: small, quick on a laptop CPU, good accuracy. The best first try.",
          weights_pattern="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
          keras_module="mobilenet_v2", fine_tune_from="block_16_expand", fine_tune_layers=11),
    _spec(name="mobilenet_v3_small", display_name="MobileNetV3 Small", constructor="MobileNetV3Small",
          default_size=224, allowed_sizes=(96, 128, 160, 192, 224), params=939_120, size_mb=3.8, top1=0.681,
          preprocessing="builtin",
          guidance="The tiniest and fastest: for phones and very small computers; a little less accurate.",
          weights_pattern="weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", keras_module="mobilenet_v3",
          fine_tune_from="expanded_conv_10_expand", fine_tune_layers=18,
          constructor_kwargs={"include_preprocessing": True},
          size_note="not in the Keras table: 4 bytes per parameter of the base",
          top1_note="Keras MobileNetV3 documentation (mobilenet_v3_small_1.0_224)"),
    _spec(name="mobilenet_v3_large", display_name="MobileNetV3 Large", constructor="MobileNetV3Large",
          default_size=224, allowed_sizes=(96, 128, 160, 192, 224), params=2_996_352, size_mb=12.0, top1=0.756,
          preprocessing="builtin",
          guidance="Fast and more accurate than MobileNetV2: a good choice for phones and quick experiments.",
          weights_pattern="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", keras_module="mobilenet_v3",
          fine_tune_from="expanded_conv_14_expand", fine_tune_layers=18,
          constructor_kwargs={"include_preprocessing": True},
          size_note="not in the Keras table: 4 bytes per parameter of the base",
          top1_note="Keras MobileNetV3 documentation (mobilenet_v3_large_1.0_224)"),
    _spec(name="efficientnet_b0", display_name="EfficientNetB0", constructor="EfficientNetB0", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=4_049_571, size_mb=29, top1=0.771, preprocessing="builtin",
          guidance="Balanced: clearly more accurate than MobileNet for a moderate cost in speed.",
          weights_pattern="efficientnetb0_notop.h5", keras_module="efficientnet",
          fine_tune_from="block7a_expand_conv", fine_tune_layers=16),
    _spec(name="efficientnet_v2_b0", display_name="EfficientNetV2B0", constructor="EfficientNetV2B0",
          default_size=224, allowed_sizes=(128, 160, 192, 224), params=5_919_312, size_mb=29, top1=0.787,
          preprocessing="builtin",
          guidance="Most accurate of the small models: newer EfficientNet, trains well, still light.",
          weights_pattern="efficientnetv2-b0_notop.h5", keras_module="efficientnet_v2",
          fine_tune_from="block6h_expand_conv", fine_tune_layers=18,
          constructor_kwargs={"include_preprocessing": True}),
    _spec(name="resnet50", display_name="ResNet50", constructor="ResNet50", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=23_587_712, size_mb=98, top1=0.749, preprocessing="caffe",
          guidance="The classic workhorse: robust and well understood, but heavy and slow on a CPU.",
          weights_pattern="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="resnet50",
          fine_tune_from="conv5_block1_1_conv", fine_tune_layers=32),
    _spec(name="resnet50_v2", display_name="ResNet50V2", constructor="ResNet50V2", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=23_564_800, size_mb=98, top1=0.760, preprocessing="tf",
          guidance="An improved ResNet50: a bit more accurate, same size; heavy on a CPU.",
          weights_pattern="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="resnet_v2",
          fine_tune_from="conv5_block1_preact_bn", fine_tune_layers=36),
    _spec(name="inception_v3", display_name="InceptionV3", constructor="InceptionV3", default_size=299,
          allowed_sizes=(160, 224, 299), params=21_802_784, size_mb=92, top1=0.779, preprocessing="tf",
          guidance="Multi-scale: looks at each spot with small and large filters at once; good for objects "
                   "of varying size. Large input (299 px), slower.",
          weights_pattern="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="inception_v3",
          min_size=75, fine_tune_after="mixed9", fine_tune_layers=31),
    _spec(name="xception", display_name="Xception", constructor="Xception", default_size=299,
          allowed_sizes=(160, 224, 299), params=20_861_480, size_mb=88, top1=0.790, preprocessing="tf",
          guidance="Very accurate classic (an Inception refined with separable convolutions); 299 px, slow.",
          weights_pattern="xception_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="xception",
          min_size=71, fine_tune_from="block13_sepconv1_act", fine_tune_layers=16),
    _spec(name="vgg16", display_name="VGG16", constructor="VGG16", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=14_714_688, size_mb=528, top1=0.713, preprocessing="caffe",
          guidance="The simplest to understand: a plain stack of convolutions and poolings. Big download, "
                   "slow, less accurate; good for teaching.",
          weights_pattern="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="vgg16",
          fine_tune_from="block5_conv1", fine_tune_layers=4),
    _spec(name="densenet121", display_name="DenseNet121", constructor="DenseNet121", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=7_037_504, size_mb=33, top1=0.750, preprocessing="torch",
          guidance="Compact but deep: each layer sees all earlier ones; often strong on medical images. "
                   "Slower than its size suggests.",
          weights_pattern="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", keras_module="densenet",
          fine_tune_from="conv5_block13_0_bn", fine_tune_layers=30),
    _spec(name="convnext_tiny", display_name="ConvNeXt Tiny", constructor="ConvNeXtTiny", default_size=224,
          allowed_sizes=(128, 160, 192, 224), params=27_820_128, size_mb=109.42, top1=0.813,
          preprocessing="builtin",
          guidance="Most accurate here: a modern network (2022) with transformer-style design; heavy on a CPU.",
          weights_pattern="convnext_tiny_notop.h5", keras_module="convnext",
          fine_tune_from="convnext_tiny_downsampling_block_2", fine_tune_layers=23,
          constructor_kwargs={"include_preprocessing": True}),
)

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in _SPECS}


def get_backbone(name: str) -> BackboneSpec:
    """Looks a backbone up by registry name.

    Raises:
        ConfigError: naming the valid names when ``name`` is unknown.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"Unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}.") from None
