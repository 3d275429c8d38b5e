"""Development and demonstration only, never imported by the library: the embedded services
(a private PostgreSQL cluster, a Prefect server, a Cloud Storage emulator), the demo platform
and `offboard demo`, `offboard serve-local`, and the JSON Schema writer (`make schemas`)."""
