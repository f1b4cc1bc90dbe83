from controlkit.cli import main

raise SystemExit(main())
