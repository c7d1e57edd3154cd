"""A linear probe on frozen features: multinomial logistic regression on standardised features.

Two solvers fit the same model. scikit-learn's LogisticRegression (lbfgs, multinomial loss) is the
reference; a torch linear layer (full-batch L-BFGS, or minibatch Adam for data that does not fit
one batch) serves large feature sets and GPUs. ``solver="auto"`` picks sklearn up to
``AUTO_SKLEARN_MAX_ELEMENTS`` feature values, torch above.
"""
import numpy as np
import torch
import torch.nn.functional as F

from .deprecation import renamed_keyword

AUTO_SKLEARN_MAX_ELEMENTS = 20_000_000


def _as_numpy(a, what):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.size == 0:
        raise ValueError(f"{what} is empty")
    return a


def _check(train_x, train_y, test_x, test_y):
    tx, ty = _as_numpy(train_x, "train_x"), _as_numpy(train_y, "train_y")
    vx, vy = _as_numpy(test_x, "test_x"), _as_numpy(test_y, "test_y")
    for name, a in (("train_x", tx), ("test_x", vx)):
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n, d), got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has non-finite values (NaN or inf)")
    if tx.shape[1] != vx.shape[1]:
        raise ValueError(f"train_x has {tx.shape[1]} features but test_x has {vx.shape[1]}")
    for name, y, x in (("train_y", ty, tx), ("test_y", vy, vx)):
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{name} must be 1-D with one label per row ({len(x)}), got shape {y.shape}")
    if len(np.unique(ty)) < 2:
        raise ValueError("train_y has a single class; a probe needs at least two")
    return tx.astype(np.float32, copy=False), ty, vx.astype(np.float32, copy=False), vy


def _sklearn_probe(tx, ty, vx, vy, seed, C=1.0, max_iter=1000):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs fits the multinomial (softmax) loss for more than two classes
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter,
                                                             random_state=seed))
    clf.fit(tx, ty)
    return float((clf.predict(vx) == vy).mean())


def _torch_probe(tx, ty, vx, vy, seed, optimizer="lbfgs", weight_decay=None, C=1.0, epochs=100, lr=None,
                 batch_size=4096, max_iter=500, device=None):
    classes, ty_idx = np.unique(ty, return_inverse=True)
    # test labels never seen in training cannot be predicted: they count as errors
    pos = np.searchsorted(classes, vy).clip(0, len(classes) - 1)
    vy_idx = np.where(classes[pos] == vy, pos, -1)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)

    x = torch.from_numpy(tx)
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant features stay at 0 after centring
    x = ((x - mean) / std).to(dev)
    y = torch.from_numpy(ty_idx).long().to(dev)
    n, d = x.shape
    lin = torch.nn.Linear(d, len(classes)).to(dev)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) * 0.01)
        lin.bias.zero_()
    # sklearn's objective is C * sum(loss) + |W|^2 / 2; per sample that is mean(loss) + |W|^2 / (2 C n)
    wd = 1.0 / (C * n) if weight_decay is None else weight_decay

    def objective(xb, yb):
        return F.cross_entropy(lin(xb), yb) + 0.5 * wd * lin.weight.pow(2).sum()

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0 if lr is None else lr, max_iter=max_iter,
                                tolerance_grad=1e-6, tolerance_change=1e-9, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = objective(x, y)
            loss.backward()
            return loss
        opt.step(closure)
    elif optimizer == "adam":
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2 if lr is None else lr)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(dev)
            for s in range(0, n, batch_size):
                b = perm[s:s + batch_size]
                opt.zero_grad()
                objective(x[b], y[b]).backward()
                opt.step()
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")

    with torch.no_grad():
        correct = 0
        for s in range(0, len(vx), batch_size):
            xb = ((torch.from_numpy(vx[s:s + batch_size]) - mean) / std).to(dev)
            pred = lin(xb).argmax(1).cpu().numpy()
            correct += int((pred == vy_idx[s:s + batch_size]).sum())
    return correct / len(vx)


def linear_probe(train_x, train_y, test_x, test_y, *, solver="auto", seed=0, backend=None, **kw):
    """Fit a linear classifier on frozen train features, return test accuracy as a fraction.

    ``solver``: "sklearn", "torch" or "auto" (``backend=`` is its old name, deprecated).
    Features are standardised with the train statistics. Keywords: C (inverse L2 strength, both
    solvers), max_iter; torch only: optimizer ("lbfgs" full batch, or "adam" minibatch), epochs, lr,
    batch_size, weight_decay (overrides C), device. "auto" takes torch when one of those is given.
    """
    solver = renamed_keyword("linear_probe", "backend", "solver", backend, solver, "auto")
    if solver not in ("auto", "sklearn", "torch"):
        raise ValueError(f"solver must be 'auto', 'sklearn' or 'torch', got {solver!r}")
    tx, ty, vx, vy = _check(train_x, train_y, test_x, test_y)
    if solver == "auto":
        torch_only = set(kw) - {"C", "max_iter"}
        solver = "sklearn" if tx.size <= AUTO_SKLEARN_MAX_ELEMENTS and not torch_only else "torch"
    if solver == "sklearn":
        unknown = set(kw) - {"C", "max_iter"}
        if unknown:
            raise TypeError(f"linear_probe(solver='sklearn') got unexpected keywords {sorted(unknown)}")
        return _sklearn_probe(tx, ty, vx, vy, seed, **kw)
    return _torch_probe(tx, ty, vx, vy, seed, **kw)
