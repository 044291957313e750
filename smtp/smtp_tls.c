/*
 * smtp_tls.c - outbound STARTTLS (not yet: sessions stay plaintext).
 */
#include "smtp_tls.h"

void smtp_tls_init(void)
{
}

int smtp_tls_session_start(struct smtp_session *s, struct smtp_request *req)
{
    (void)s;
    (void)req;
    return 0;
}

int smtp_sasl_session_auth(struct smtp_session *s, struct smtp_request *req)
{
    (void)s;
    (void)req;
    return 0;
}
