"""`python -m mmgitops`: the command line."""

from mmgitops.cli.main import main

raise SystemExit(main())
