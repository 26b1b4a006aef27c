"""Job submission, as Ray's `ray.job_submission`: run a command on the cluster's
head as a job's driver, follow its output, stop it (`beamlet job ...` on the
command line).  The client (sdk.py) talks to the head's job manager
(manager.py) through the GCS."""
from .common import DriverInfo, JobDetails, JobInfo, JobStatus, JobType
from .sdk import JobSubmissionClient

__all__ = ["JobSubmissionClient", "JobStatus", "JobInfo", "JobDetails", "JobType",
           "DriverInfo"]
