// Package sip owns sipanchor's SIP side: transports, the transaction-stateful
// proxy core (Record-Route, Via with rport/received, loose routing, CANCEL,
// parallel forking), the registrar and location service with its SQLite
// bindings, NAT traversal (Contact aliases, keepalives) and static routing.
//
// It builds on github.com/emiago/sipgo for message parsing, transports and
// transactions, and fills the gaps a proxy needs on top of them: in-dialog
// requests toward a UA behind NAT go to the address its packets came from,
// requests to a TCP client reuse the connection it opened, and malformed
// messages are answered 400 or dropped without disturbing anything else.
package sip
