//! A broadcast bus of [`veilshare_shared::Event`]s: the shares lifecycle publishes, the local
//! API's WebSocket and the CLI subscribe. Slow subscribers miss events (they are told how many)
//! rather than slow the publishers down.

use tokio::sync::broadcast;
use veilshare_shared::Event;

/// Events kept for slow subscribers before the oldest are dropped.
const CAPACITY: usize = 1024;

/// The event bus. Cloning gives another handle to the same bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    /// Publishes an event to every current subscriber (none is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
