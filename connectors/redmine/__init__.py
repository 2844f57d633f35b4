"""Redmine: issues and journals polled in; tickets opened, notes added and issues looked up out."""
