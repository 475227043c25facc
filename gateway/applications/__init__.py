"""Inter-provincial applications: validation, lifecycle, submission, delivery and watching."""
