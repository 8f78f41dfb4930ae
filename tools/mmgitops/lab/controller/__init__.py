"""The real modelmesh-serving controller on the local cluster: built from the pinned RHOAI source, installed as
the RHOAI operator installs it, run as a host process."""
