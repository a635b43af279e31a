from rest_framework.pagination import LimitOffsetPagination

# Beyond any real table, and safely inside a 64-bit database integer.
MAX_OFFSET = 2**53


class Pagination(LimitOffsetPagination):
    """limit/offset paging with a page-size cap; absurd offsets read as an empty page, not a crash."""

    default_limit = 50
    max_limit = 1000

    def get_offset(self, request):
        return min(super().get_offset(request), MAX_OFFSET)
