"""Experimental APIs, at Ray's paths (`ray.experimental`).  beamlet has:

- `beamlet.experimental.tqdm_ray` — progress bars from tasks and actors, drawn by
  the driver.
"""
