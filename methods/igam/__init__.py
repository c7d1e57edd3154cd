"""IGAM (Chan et al., CVPR 2020): adversarial robustness transferred from a robust teacher to a
student by matching input gradients. Each stage is usable on its own:

- ``gradients``: ``input_gradient`` (J(x) of the true class's probability, or of the loss),
  ``l_diff``, ``rescale_gamma`` (official [0, 255] sums <-> [0, 1] means);
- ``discriminator``: ``GradientDiscriminator`` (the official 5-block conv D), ``normalize_gradients``,
  ``discriminator_loss``;
- ``adapters``: ``Upsize``, ``CropPad``, ``make_adapter`` for a teacher of another input size;
- ``teacher``: ``PGDTrainingStep``, ``robust_teacher`` (cached by ``TeacherConfig``), ``finetune_head``;
- ``step``: ``IGAMStep`` (an ``addernet.train`` step; D and its optimiser as extra state);
- ``evaluation``: ``robustness`` (clean, FGSM, PGD-20, transfer; adder models under both gradient
  modes, worst case per image), ``strong_pgd``, ``transfer_examples``;
- ``experiment``: the mnist5k miniature behind ``python -m methods.igam``;
- ``preregistered``: its second version (issue 27): the new arms, tuning on validation, the paired claims.
"""
from .adapters import CropPad, RepeatChannels, Upsize, make_adapter
from .discriminator import GradientDiscriminator, discriminate, discriminator_loss, normalize_gradients
from .evaluation import adder_grad_mode, grad_mode_supported, robustness, set_adder_backend, transfer_examples
from .gradients import input_gradient, l_diff, rescale_gamma
from .step import DiscriminatorUpdate, IGAMStep, freeze
from .teacher import HeadTuning, PGDTrainingStep, TeacherConfig, finetune_head, robust_teacher

__all__ = [
    "CropPad", "DiscriminatorUpdate", "GradientDiscriminator", "HeadTuning", "IGAMStep", "PGDTrainingStep",
    "RepeatChannels", "TeacherConfig", "Upsize", "adder_grad_mode", "discriminate", "discriminator_loss",
    "finetune_head", "freeze", "grad_mode_supported", "input_gradient", "l_diff", "make_adapter",
    "normalize_gradients", "rescale_gamma", "robust_teacher", "robustness", "set_adder_backend",
    "transfer_examples",
]
