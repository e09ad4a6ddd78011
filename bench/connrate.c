/* connrate: connection set-up rate of a replication server, the same for any server.
 * Each of P forked clients loops: PQconnectdb(conninfo) (startup, authentication,
 * TLS if the conninfo asks), IDENTIFY_SYSTEM, PQfinish; for SECONDS seconds.
 * Prints the total and the rate; the password comes from PGPASSWORD, never argv.
 * usage: connrate "conninfo" SECONDS PARALLEL
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}

int main(int argc, char **argv){
  if(argc<4){fprintf(stderr,"usage: connrate conninfo SECONDS PARALLEL\n");return 2;}
  double seconds=atof(argv[2]); int par=atoi(argv[3]);
  int fds[64][2]; if(par<1||par>64){fprintf(stderr,"PARALLEL 1..64\n");return 2;}
  double t0=now();
  for(int i=0;i<par;i++){
    if(pipe(fds[i])!=0){perror("pipe");return 1;}
    pid_t p=fork();
    if(p==0){
      long n=0, failed=0;
      while(now()-t0<seconds){
        PGconn *c=PQconnectdb(argv[1]);
        if(PQstatus(c)!=CONNECTION_OK){ if(!failed++) fprintf(stderr,"connect: %s",PQerrorMessage(c)); PQfinish(c); continue; }
        PGresult *r=PQexec(c,"IDENTIFY_SYSTEM");
        if(PQresultStatus(r)!=PGRES_TUPLES_OK){ if(!failed++) fprintf(stderr,"IDENTIFY_SYSTEM: %s",PQerrorMessage(c)); }
        else n++;
        PQclear(r); PQfinish(c);
      }
      char buf[64]; int len=snprintf(buf,sizeof buf,"%ld %ld\n",n,failed);
      if(write(fds[i][1],buf,len)!=len) _exit(1);
      _exit(0);
    }
    close(fds[i][1]);
  }
  long total=0, failed=0;
  for(int i=0;i<par;i++){
    char buf[64]={0}; if(read(fds[i][0],buf,sizeof buf-1)<0) return 1;
    long n=0,f=0; sscanf(buf,"%ld %ld",&n,&f); total+=n; failed+=f;
  }
  while(wait(NULL)>0){}
  double el=now()-t0;
  printf("connections=%ld failed=%ld seconds=%.3f per_second=%.1f\n",total,failed,el,total/el);
  return failed>0 && total==0;
}
