"""CloudEvents 1.0 codec internals; import the public API from ``wisp.eventing.cloudevents``."""
