"""Custom training steps the tests share (test_train_step.py, and test_ddp.py's torchrun workers)."""
import torch
import torch.nn.functional as F
from torch import nn

from addernet.train import StepOutput
from addernet.train.distributed import wrap


def make_discriminator() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))


class AdversarialStep:
    """GAN-style, two optimisers: a discriminator learns to tell one-hot labels from the model's
    softmax, and the model minimises cross-entropy plus fooling it. The step makes both updates
    itself (loss None). Under DDP the discriminator is wrapped so its gradients are averaged too."""

    def __init__(self, disc: nn.Module, d_opt, g_opt, weight: float = 0.1):
        self.disc, self.d_opt, self.g_opt, self.weight = disc, d_opt, g_opt, weight
        self._d = None

    def __call__(self, model, batch) -> StepOutput:
        if self._d is None:
            self._d = wrap(self.disc)
        x, y = batch
        logits = model(x)
        real, fake = F.one_hot(y, 10).float(), logits.softmax(1)
        # One discriminator forward per update keeps DDP to one forward per backward.
        d_out = self._d(torch.cat([real, fake.detach()]))
        target = torch.cat([torch.ones(len(y), 1), torch.zeros(len(y), 1)]).to(d_out)
        d_loss = F.binary_cross_entropy_with_logits(d_out, target)
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()

        fool = F.binary_cross_entropy_with_logits(self.disc(fake), torch.ones(len(y), 1).to(logits))
        ce = F.cross_entropy(logits, y)
        g_loss = ce + self.weight * fool
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        acc = (logits.detach().argmax(1) == y).float().mean()
        return StepOutput(None, {"loss": ce.detach(), "d_loss": d_loss.detach(), "acc": acc})
