/*
 * smtp_tls.h - outbound STARTTLS and SASL AUTH hooks of a session.
 *
 * smtp_tls_session_start(s, req)  after EHLO: STARTTLS per
 *     smtp_tls_security_level / smtp_tls_policy_maps, then EHLO again.
 * smtp_sasl_session_auth(s, req)  AUTH when smtp_sasl_auth_enable and a
 *     password for the nexthop exists.
 * Both return 0 to go on with the session, -1 when the session must be
 * closed (reason recorded in req as a soft or hard failure).
 */
#ifndef POSTERN_SMTP_TLS_H
#define POSTERN_SMTP_TLS_H

#include "smtp.h"

int smtp_tls_session_start(struct smtp_session *s, struct smtp_request *req);
int smtp_sasl_session_auth(struct smtp_session *s, struct smtp_request *req);
int smtp_session_helo(struct smtp_session *s, struct smtp_request *req);
void smtp_tls_init(void);

#endif
