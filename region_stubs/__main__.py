"""`python -m region_stubs --region 440000 --port 0 ...`: run one region stub (see `config`)."""

from region_stubs.server import main

raise SystemExit(main())
