"""The state API's error (Ray's ray.util.state.exception.RayStateApiException)."""
from ...exceptions import BeamletError


class RayStateApiException(BeamletError):
    """A state query failed: the cluster could not be reached, a node did not
    answer (with raise_on_missing_output=True), or the query took too long."""


DataSourceUnavailable = RayStateApiException
