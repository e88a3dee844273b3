"""``python -m training``: list the training commands."""

from __future__ import annotations

COMMANDS = {
    "train": "train rcGAN or a baseline: --config C --out DIR [--max-steps N] [--devices N] "
    "[--num-nodes N] [--resume]",
    "export": "CKPT OUT.safetensors: generator + metadata for the plugin",
    "simulate": "--out DIR: fastMRI-layout dataset of simulated k-space from real anatomy",
    "datasets": "faces-demo --out DIR: a tiny face folder for the smoke config",
    "toy": "the 1-D toy experiment of Fig. 1 / Props. 3.1-3.2",
}


def main() -> None:
    print("usage: python -m training.<command> --help\n")
    for name, text in COMMANDS.items():
        print(f"  {name:<9} {text}")


if __name__ == "__main__":
    main()
