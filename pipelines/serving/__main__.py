from pipelines.serving.cli import main

raise SystemExit(main())
