from ms_gpt.cli import main

raise SystemExit(main())
