"""`imgclf weights`: call the library with the parsed arguments (cli/parser.py) and print the result."""

from __future__ import annotations

from imgclf.models.weights import fetch_weights, keras_cache_dir, list_weights


def run(args) -> int:
    """Run `imgclf weights` from its parsed arguments; return the exit status."""
    if args.weights_command == "fetch":
        for name, path in fetch_weights(args.names):
            print(f"{name:<22} {path}")
        return 0
    rows = list_weights()
    print(f"Keras cache: {keras_cache_dir()}")
    if not rows:
        print("No pretrained weights on this machine yet: `imgclf weights fetch MODEL` downloads them.")
    for row in rows:
        print(f"{row['model']:<22} {row['size_mb']:>7.1f} MB  {row['source']:<11}  {row['path']}")
    return 0
