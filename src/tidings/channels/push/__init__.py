"""Mobile push: Apple's APNs (:mod:`.apns`) and Google's FCM HTTP v1 (:mod:`.fcm`) over
HTTP/2, and :mod:`.router`, the transport that hands each message to the one its token
belongs to. :mod:`.gateway` holds what the two share (the HTTP/2 client, ``Retry-After``,
connection errors)."""
