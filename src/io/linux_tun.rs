//! owner: fill in
pub struct LinuxTun;
impl LinuxTun { pub fn create(_: &str) -> std::io::Result<Self> { todo!() } pub fn from_fd(_: i32, _: Option<&str>) -> std::io::Result<Self> { todo!() } }
impl super::Tun for LinuxTun {
    fn read(&self, _: &mut [&mut [u8]], _: &mut [usize], _: usize) -> std::io::Result<usize> { todo!() }
    fn write(&self, _: &[&[u8]], _: usize) -> std::io::Result<()> { todo!() }
    fn batch_size(&self) -> usize { 1 } fn name(&self) -> &str { "" } fn mtu(&self) -> std::io::Result<usize> { todo!() } fn exists(&self) -> bool { true } fn close(&self) {}
}
pub fn set_mtu(_: &str, _: usize) -> std::io::Result<()> { todo!() }
pub fn set_up(_: &str) -> std::io::Result<()> { todo!() }
pub fn add_address(_: &str, _: std::net::IpAddr, _: u8) -> std::io::Result<()> { todo!() }
pub fn del_address(_: &str, _: std::net::IpAddr, _: u8) -> std::io::Result<()> { todo!() }
