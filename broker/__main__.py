"""`python -m broker`: the broker process (broker.broker), as the process table and its units start it."""

from broker.broker import main

raise SystemExit(main())
