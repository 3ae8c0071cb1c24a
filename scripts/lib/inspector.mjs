// A synchronous caller of this process's own inspector (an in-process session answers before `post` returns).
import { Session } from 'node:inspector';

/** Connects a session; the returned function posts a method and returns its result (throws its error). */
export function inspectorPost() {
  const session = new Session();
  session.connect();
  return (method, params) => {
    let out;
    session.post(method, params, (err, r) => {
      if (err) throw err;
      out = r;
    });
    return out;
  };
}
