from mmgitops.cli import main

raise SystemExit(main())
