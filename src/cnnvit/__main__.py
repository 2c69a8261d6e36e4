from cnnvit.cli import main

raise SystemExit(main())
