from mmgitops.cli.main import main

raise SystemExit(main())
