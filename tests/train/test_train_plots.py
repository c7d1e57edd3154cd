"""The training curves read right (issue 26 item 11): whole epochs on the x axis even for one
epoch, plain numbers on a log loss axis, a title that says what was trained, and a resume marked."""
import pytest

from addernet.train import TrainConfig, fit
from addernet.train.plots import plot_compare, plot_curves
from helpers.figures import saved_figures, tick_labels  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE = [{"epoch": 1, "lr": 0.1, "train_loss": 0.93, "test_loss": 0.91, "train_acc": 0.70, "test_acc": 0.72}]


def _x_ticks_in_view(ax):
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


@pytest.mark.parametrize("draw", [lambda p: plot_curves(ONE, p, "t"), lambda p: plot_compare({"adder": ONE}, p, "t")])
def test_one_epoch_has_whole_epoch_ticks_and_plain_log_labels(tmp_path, saved_figures, draw):
    draw(tmp_path / "c.png")
    (fig,) = saved_figures
    for ax in fig.axes:
        assert _x_ticks_in_view(ax) == [1.0]
    loss = fig.axes[0]
    assert loss.get_yscale() == "log"
    labels = tick_labels(loss)
    assert labels and not any("times" in t or "^" in t or "$" in t for t in labels), labels
    assert all(0.85 < float(t) < 1.0 for t in labels), labels


def test_fit_model_curves_say_data_and_recipe(tmp_path, saved_figures):
    from addernet.data import make_loaders
    from addernet.train import build_model

    loaders = make_loaders("digits", None, 64)
    model = build_model("tinynet", num_classes=loaders[2].num_classes)
    fit(model, loaders, epochs=1, limit_batches=1, out=str(tmp_path), log=None, progress=False)
    title = saved_figures[-1]._suptitle.get_text()
    assert title.startswith("TinyNet on digits") and ": 1 epoch," in title and "seed 0" in title, title


def test_resume_is_marked_on_the_curves(tmp_path, saved_figures):
    cfg = dict(data="digits", model="tinynet", limit_batches=1, out=str(tmp_path), progress=False)
    fit(TrainConfig(epochs=3, stop_after=1, **cfg), log=None)
    res = fit(TrainConfig(epochs=3, resume=True, **cfg), log=None)
    assert res.resumed_at == [1]
    fig = saved_figures[-1]
    for ax in fig.axes:
        marks = [line for line in ax.get_lines() if line.get_label() == "resumed"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [1.5, 1.5]
        assert "resumed" in [t.get_text() for t in ax.get_legend().get_texts()]
    # Resumed twice: both marked, as the checkpoint remembers the first.
    with pytest.warns(UserWarning, match="stretched"):  # 4 epochs where 3 were planned
        fit(TrainConfig(epochs=4, resume=True, **cfg), log=None)
    dotted = [line.get_xdata()[0] for line in saved_figures[-1].axes[0].get_lines() if line.get_linestyle() == ":"]
    assert sorted(dotted) == [1.5, 3.5]
