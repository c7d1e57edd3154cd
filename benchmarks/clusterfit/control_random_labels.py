"""Control for the ClusterFit miniature: N_cf trained exactly as in the miniature (conv LeNet-5-BN,
K = 50 outputs, 12 epochs, the digit augmentation) but on uniformly random ids instead of k-means
ids, then the same probe. Run once per seed: ``python benchmarks/clusterfit/control_random_labels.py S``."""
import time

from addernet.cli.checks import Parser, seed_int


def main(argv=None) -> None:
    p = Parser(prog="control_random_labels.py", description=__doc__.splitlines()[0])
    p.add_argument("seed", type=seed_int, help="the run's seed (the labels use 10000 + seed)")
    seed = p.parse_args(argv).seed  # a mistake is one line and exit 2, before torch trains anything

    from addernet.models import get_model
    from addernet.train import seed_everything
    from methods.clusterfit import plain_loaders, probe_accuracy, random_pseudo_labels, train_cf
    from methods.clusterfit.experiment import DIGIT_AUGMENT, MiniConfig, set_threads

    cfg = MiniConfig()
    set_threads(cfg.threads)
    train, test, info = plain_loaders(cfg.data, batch_size=500)
    pseudo = random_pseudo_labels(len(train.dataset), 50, seed=10_000 + seed)
    t = time.perf_counter()
    seed_everything(seed)
    cf = get_model(cfg.model, num_classes=50, kind="conv", in_channels=info.in_channels)
    train_cf(cf, cfg.data, pseudo, epochs=cfg.cf_epochs, batch_size=cfg.batch_size, lr=cfg.lr, aug=DIGIT_AUGMENT,
             seed=seed, progress=False, log=None, device="cpu")
    acc = probe_accuracy(cf, train, test, layer=cfg.layer, device="cpu", seed=seed)
    print(f"seed {seed} random-label N_cf (K=50, conv): {100 * acc:.2f}% in {time.perf_counter() - t:.0f} s",
          flush=True)


if __name__ == "__main__":
    main()
