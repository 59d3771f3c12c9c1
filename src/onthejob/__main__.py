"""python -m onthejob ..."""

from onthejob.cli import main

raise SystemExit(main())
