"""Every module class a YOLOv6 checkpoint may name, by exact class path. Review changes here.

A YOLOv6 checkpoint pickles its whole network, module objects by class path. The jailed reader (``untrusted/``)
turns an object of a class listed here into an inert record; any other global the file names, apart from the few
functions and storage types ``untrusted/rebuilders.py`` rebuilds as data, refuses the file. There are no prefixes:
every name is one class of YOLOv6 releases 0.1.0-0.4.1 or one torch layer those releases build, and no object of
any of them is ever created.
"""

from __future__ import annotations

# The torch layers YOLOv6 0.1.0-0.4.1 build (every nn.<Layer> in yolov6/layers and yolov6/models of each tag).
TORCH_LAYERS = frozenset(f"torch.nn.modules.{name}" for name in (
    "conv.Conv2d", "conv.ConvTranspose2d", "batchnorm.BatchNorm2d", "container.Sequential", "container.ModuleList",
    "activation.ReLU", "activation.SiLU", "activation.Hardswish", "activation.Hardsigmoid", "linear.Identity",
    "pooling.MaxPool2d", "pooling.AvgPool2d", "pooling.AdaptiveAvgPool2d", "upsampling.Upsample",
))

# YOLOv6's module classes of tags 0.1.0-0.4.1 (every class of yolov6/layers/common.py and of the model modules),
# detection, Lite, segmentation and P6 alike: architecture.py names the families it does not import.
YOLOV6_CLASSES = frozenset(
    [f"yolov6.layers.common.{name}" for name in (
        "BepC3", "BiFusion", "BottleRep", "BottleRep3", "CSPBlock", "CSPSPPF", "CSPSPPFModule", "Concat", "Conv",
        "ConvBN", "ConvBNHS", "ConvBNReLU", "ConvBNSiLU", "ConvModule", "ConvWrapper", "Conv_C3", "DPBlock",
        "DarknetBlock", "LinearAddBlock", "Lite_EffiBlockS1", "Lite_EffiBlockS2", "MBLABlock", "QARepVGGBlock",
        "QARepVGGBlockV2", "RealVGGBlock", "RepBlock", "RepVGGBlock", "SEBlock", "SPPF", "SPPFModule", "ScaleLayer",
        "SiLU", "SimCSPSPPF", "SimConv", "SimConvWrapper", "SimSPPF", "Transpose")]
    + [f"yolov6.models.efficientrep.{name}" for name in (
        "CSPBepBackbone", "CSPBepBackbone_P6", "EfficientRep", "EfficientRep6", "Lite_EffiBackbone")]
    + [f"yolov6.models.reppan.{name}" for name in (
        "CSPRepBiFPANNeck", "CSPRepBiFPANNeck_P6", "CSPRepPANNeck", "CSPRepPANNeck_P6", "Lite_EffiNeck",
        "RepBiFPANNeck", "RepBiFPANNeck6", "RepPANNeck", "RepPANNeck6")]
    + ["yolov6.models.yolo.Model", "yolov6.models.yolo_lite.Model", "yolov6.models.effidehead.Detect",
       "yolov6.models.effidehead_seg.Detect", "yolov6.models.heads.effidehead_distill_ns.Detect",
       "yolov6.models.heads.effidehead_fuseab.Detect", "yolov6.models.heads.effidehead_lite.Detect"]
    + [f"yolov6.models.heads.{head}.{name}" for head in ("effidehead_fuseab_seg", "effidehead_fuseab_seg_solo")
       for name in ("Conv", "Detect", "Proto")]
)

RECORD_CLASSES = TORCH_LAYERS | YOLOV6_CLASSES
