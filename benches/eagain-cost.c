/* Cost of one recv() that returns EAGAIN on an idle loopback TCP socket:
 * the read a server wastes per request when it reads until EAGAIN after
 * each request of an unpipelined client (see BENCHMARKS.md, "Where the
 * time goes"). Binds 127.0.0.1 only.
 *   cc -O2 -o /tmp/eagain benches/eagain-cost.c && taskset -c 1 /tmp/eagain
 */
#include <stdio.h>
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double cpu(void){struct timespec t;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  int l=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in a={0}; a.sin_family=AF_INET; a.sin_addr.s_addr=htonl(0x7f000001);
  bind(l,(void*)&a,sizeof a); socklen_t n=sizeof a; getsockname(l,(void*)&a,&n); listen(l,1);
  int c=socket(AF_INET,SOCK_STREAM,0); connect(c,(void*)&a,sizeof a); int s=accept(l,0,0);
  fcntl(s,F_SETFL,O_NONBLOCK); char buf[65536]; int N=2000000, e=0;
  double t0=now(), c0=cpu();
  for(int i=0;i<N;i++){ if(recv(s,buf,sizeof buf,0)<0 && errno==EAGAIN) e++; }
  double t1=now(), c1=cpu();
  printf("recv EAGAIN: %d calls, %.0f ns/call wall, %.0f ns/call cpu\n", e, (t1-t0)/N*1e9, (c1-c0)/N*1e9);
  return 0;
}
