//! The real Nitro Secure Module, through `/dev/nsm` with AWS's own crate (its `unsafe`
//! ioctl stays in that crate). Only works inside a Nitro enclave; CI compiles it.

use std::collections::BTreeMap;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

use super::{AttestationRequest, DOCUMENT_PCRS, Nsm, NsmError};

/// The NSM device the driver opens.
const DEVICE: &str = "/dev/nsm";

/// The Nitro Secure Module of the enclave this process runs in. The device is closed when
/// this is dropped. The kernel driver serialises requests, so one handle serves every
/// thread.
#[derive(Debug)]
pub struct NitroNsm {
    fd: i32,
}

impl NitroNsm {
    /// Open `/dev/nsm`.
    ///
    /// # Errors
    /// [`NsmError::Device`] when it cannot be opened: this process is not in an enclave.
    pub fn open() -> Result<Self, NsmError> {
        let fd = nsm_init();
        if fd < 0 {
            return Err(NsmError::Device {
                device: DEVICE,
                reason: "cannot be opened (is this process inside a Nitro enclave?)".into(),
            });
        }
        Ok(Self { fd })
    }
}

impl Drop for NitroNsm {
    fn drop(&mut self) {
        nsm_exit(self.fd);
    }
}

impl Nsm for NitroNsm {
    fn attest(&self, request: AttestationRequest) -> Result<Vec<u8>, NsmError> {
        request.check()?;
        let AttestationRequest {
            public_key,
            user_data,
            nonce,
        } = request;
        let response = nsm_process_request(
            self.fd,
            Request::Attestation {
                user_data: user_data.map(ByteBuf::from),
                nonce: nonce.map(ByteBuf::from),
                public_key: public_key.map(ByteBuf::from),
            },
        );
        match response {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(NsmError::Refused {
                request: "Attestation",
                code: format!("{code:?}"),
            }),
            _ => Err(NsmError::UnexpectedResponse {
                request: "Attestation",
            }),
        }
    }

    fn describe_pcrs(&self) -> Result<BTreeMap<u8, Vec<u8>>, NsmError> {
        (0..DOCUMENT_PCRS)
            .map(|index| {
                match nsm_process_request(
                    self.fd,
                    Request::DescribePCR {
                        index: u16::from(index),
                    },
                ) {
                    Response::DescribePCR { data, .. } => Ok((index, data)),
                    Response::Error(code) => Err(NsmError::Refused {
                        request: "DescribePCR",
                        code: format!("{code:?}"),
                    }),
                    _ => Err(NsmError::UnexpectedResponse {
                        request: "DescribePCR",
                    }),
                }
            })
            .collect()
    }
}
