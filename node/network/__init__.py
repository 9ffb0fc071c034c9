"""The DICOM network edge: AE builder, C-STORE handler, status codes, TLS.

Nothing here decides study completion or runs analysis; the handler stores one
object durably, commits one catalogue row and tells the completion service.
"""
