"""`python -m avs_jax.import_weights`: the command line of `avs_jax.import_weights.cli`."""

import sys

from avs_jax.import_weights.cli import main

if __name__ == "__main__":
    sys.exit(main())
