"""The kubernetes provider: Deployments, Services and Secrets by server-side apply (docs/kubernetes.md)."""
