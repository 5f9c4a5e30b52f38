'use strict';
// Token verification shared by the handshake, connection recovery and REST.
// Every refusal carries a code from the contract's x-handshake.refusalCodes (AUTH-11).

const jwt = require('jsonwebtoken');

class AuthError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The verified claims of `token` as {tenantId, exp (s), claims}; throws AuthError otherwise. */
function verifyToken(token, jwtConfig) {
  if (typeof token !== 'string' || token === '') {
    throw new AuthError('token_missing', 'no token in auth.token');
  }
  const decoded = jwt.decode(token, { complete: true });
  if (!decoded || typeof decoded.header !== 'object' || typeof decoded.payload !== 'object' || decoded.payload === null) {
    throw new AuthError('token_invalid', 'malformed token');
  }
  // Pinned algorithm: an unsigned token or another algorithm is refused before any verification (RFC 8725 3.1).
  if (decoded.header.alg !== jwtConfig.algorithm) {
    throw new AuthError('token_algorithm', `algorithm ${String(decoded.header.alg)} is not accepted`);
  }
  let claims;
  try {
    claims = jwt.verify(token, jwtConfig.secret, {
      algorithms: [jwtConfig.algorithm],
      audience: jwtConfig.audience,
      clockTolerance: 0,
    });
  } catch (err) {
    if (err instanceof jwt.TokenExpiredError) throw new AuthError('token_expired', 'token expired');
    if (err instanceof jwt.NotBeforeError) throw new AuthError('token_not_yet_valid', 'token not yet valid');
    throw new AuthError('token_invalid', 'invalid token');
  }
  if (typeof claims.exp !== 'number') {
    // A token that never expires could never be ended (AUTH-8); this issuer always sets exp.
    throw new AuthError('token_invalid', 'token has no exp');
  }
  const tenantId = claims[jwtConfig.tenantClaim];
  if (typeof tenantId !== 'string' || tenantId === '') {
    throw new AuthError('tenant_missing', `no ${jwtConfig.tenantClaim} claim`);
  }
  return { tenantId, exp: claims.exp, claims };
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
function bearer(header) {
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : null;
}

module.exports = { AuthError, verifyToken, bearer };
