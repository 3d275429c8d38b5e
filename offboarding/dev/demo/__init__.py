"""The demo platform (a small multi-tenant collaboration app) and the `offboard demo` run."""
