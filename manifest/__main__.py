"""`python -m manifest`: the same as `python -m manifest.build`."""

from manifest.build import main

raise SystemExit(main())
