"""The CloudEvent types of KServe's inference log, shared by the model server and the drift monitor."""

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE"]

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
