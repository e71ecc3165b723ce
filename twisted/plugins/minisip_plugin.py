from twisted.application.service import ServiceMaker

minisip = ServiceMaker("minisip", "minisip.tap", "minisip SIP PBX", "minisip")
