"""``python -m memreranker``: the same as the ``memreranker`` command."""

from memreranker.cli import main

raise SystemExit(main())
