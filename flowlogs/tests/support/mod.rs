pub mod nfcapd;
