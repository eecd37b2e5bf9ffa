"""The job system: kinds, the context task code reports through, the runner and the reaper."""
