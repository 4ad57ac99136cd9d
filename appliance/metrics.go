package appliance

// MailboxDepths reports the fullest meeting mailbox and the fullest
// connection's outbound queue; it satisfies web.MailboxSource.
func (a *appliance) MailboxDepths() (meeting, connection int) {
	return a.ctrl.maxMailbox(), a.wt.MaxQueued()
}

// maxMailbox is the number of messages waiting in the fullest meeting
// mailbox.
func (c *Controller) maxMailbox() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.meetings {
		n = max(n, len(m.mailbox))
	}
	return n
}
