"""One HTTP attempt: URL templates, signatures, outbound address rules, request, transport."""
