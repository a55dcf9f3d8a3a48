// A registration link of the older form (/ui/register.html#tenant=…&invite=…) opens the
// dashboard's registration; the fragment, which holds the invitation, never reaches a server.
location.replace("/#register?" + location.hash.slice(1));
