"""Programs run against the local sandbox: `python -m sandbox.programs.demo` (`make run`) and
`python -m sandbox.programs.soak` (`make soak`)."""
