//! Integration tests of ect-unet in one test binary (see each module's header).

mod snapshot;
