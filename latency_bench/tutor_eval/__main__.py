from latency_bench.tutor_eval.runner import main

raise SystemExit(main())
