from django.db import connection
from django.http import JsonResponse

from notes.models import Note


def health(request):
    """200 when the app runs and its database answers; 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # the reason is the payload of a failing health check
        return JsonResponse({"status": "error", "database": str(exc)[:200]}, status=503)
    return JsonResponse(
        {"status": "ok", "database": connection.vendor, "notes": Note.objects.count()}
    )


def notes(request):
    return JsonResponse({"notes": [{"id": n.id, "text": n.text} for n in Note.objects.all()[:20]]})
