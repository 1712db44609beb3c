"""Server-rendered fragments: the one rendering path for data on a page, and for htmx's answers."""


def is_htmx(request) -> bool:
    """Whether htmx sent the request (to swap the answer into the page), rather than a navigation."""
    return request.headers.get("HX-Request") == "true"
